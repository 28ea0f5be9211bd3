package stage

import "slices"

// Projection: a decoder need not materialise fields that nothing after it
// reads. When a stage whose handler is a Projector starts, it asks the
// stages downstream (its next stage and routes, theirs, and so on) what
// they read, and tells the decoder.

// FieldReader is implemented by handlers that read only some of an
// event's fields: a sink reads its columns' paths, a filter its
// condition's. FieldsRead returns those paths (dotted, as Event.Value takes
// them; "$", the payload, is not a field and need not be listed), or
// all=true when the handler may read any field. A handler that does not
// implement FieldReader is taken to read every field.
type FieldReader interface {
	FieldsRead() (paths []string, all bool)
}

// Projector is implemented by decoders: handlers that replace an event's
// fields with ones decoded from its payload. Before the stage's workers
// start (and before Handle is first called), Project is called once with
// the paths that the stages after it read, or with all=true when one of
// them may read any field; a decoder then needs to set only those
// fields. A stage after a decoder does not see past it: what a later
// decoder's stages read is that decoder's concern.
type Projector interface {
	Project(paths []string, all bool)
}

// project tells s's handler, when it is a Projector, what the stages
// after it read.
func (s *Stage) project() {
	p, ok := s.h.(Projector)
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
		if st.h == nil { // a source: nothing reads through it
			return
		}
		r, ok := st.h.(FieldReader)
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
		if _, decoder := st.h.(Projector); decoder {
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
