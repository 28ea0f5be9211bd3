package engine

// This file holds projection: telling a decoder which fields the stages
// after it read.

import "slices"

// This file holds projection: a decoder need not materialise fields that
// nothing after it reads. When a stage whose handler is a decoder (it has
// Project, see stage.Kind) starts, it asks the stages downstream (its next
// stage and routes, theirs, and so on) what they read (FieldsRead), and
// tells the decoder. A stage after a decoder does not see past it: what a
// later decoder's stages read is that decoder's concern.

// fieldReader is a handler that says which fields it reads.
type fieldReader interface {
	FieldsRead() (paths []string, all bool)
}

// projector is a decoder.
type projector interface {
	Project(paths []string, all bool)
}

// project tells s's handler, when it is a decoder, what the stages
// after it read.
func (s *Stage) project() {
	p, ok := s.handler.(projector)
	if !ok {
		return
	}
	var paths []string
	all := false
	seen := map[*Stage]bool{s: true}
	var walk func(st *Stage)
	walk = func(st *Stage) {
		if st == nil || seen[st] || all {
			return
		}
		seen[st] = true
		if st.handler == nil { // a source: nothing reads through it
			return
		}
		// A stage's shard_by fields are read as events enter it (its
		// key), before its handler runs: a decoder stage's too.
		for _, x := range st.set.ShardBy {
			if x != "$" && !slices.Contains(paths, x) {
				paths = append(paths, x)
			}
		}
		r, ok := st.handler.(fieldReader)
		if !ok {
			all = true
			return
		}
		ps, a := r.FieldsRead()
		if a {
			all = true
			return
		}
		for _, x := range ps {
			if x != "$" && !slices.Contains(paths, x) {
				paths = append(paths, x)
			}
		}
		if _, decoder := st.handler.(projector); decoder {
			return // it replaces the fields: what follows reads its own
		}
		walk(st.next)
		for _, r := range st.routes {
			walk(r)
		}
	}
	walk(s.next)
	for _, r := range s.routes {
		walk(r)
	}
	if all {
		paths = nil
	}
	p.Project(paths, all)
}
