package process

// This file holds process.json's projection: the trie of the paths it
// decodes (Project), and how a record's members claim those paths.

import (
	"slices"
	"strings"

	"github.com/stagedserver/seda/stage"
)

// Project is told what the stages after this one read (see stage.Kind):
// with all false, only those paths (and require's) are decoded into
// fields; the rest of each record is still checked, not kept.
func (h *jsonHandler) Project(paths []string, all bool) {
	if all {
		h.proj = nil
		return
	}
	pr := &projection{top: map[string]*topEntry{}}
	for _, p := range append(slices.Clone(paths), h.require...) {
		if p == "$" || checkPath(p) != nil || slices.Contains(pr.paths, p) {
			continue
		}
		id := len(pr.paths)
		pr.paths = append(pr.paths, p)
		// A top-level key may hold p whole ("log.level" as one key) or
		// any prefix of it that ends before a dot.
		for end := 0; end <= len(p); end++ {
			if end < len(p) && p[end] != '.' {
				continue
			}
			e := pr.top[p[:end]]
			if e == nil {
				e = &topEntry{exact: -1}
				pr.top[p[:end]] = e
			}
			if end == len(p) {
				e.exact = id
				continue
			}
			e.ids = append(e.ids, id)
			if e.sub == nil {
				e.sub = &pnode{id: -1}
			}
			e.sub.add(p[end+1:], id)
		}
	}
	// A wanted path below another needs its top-level key's value when
	// that key takes it without holding it (see hide).
	for id, p := range pr.paths {
		for end := len(p) - 1; end > 0; end-- {
			if p[end] != '.' {
				continue
			}
			if q := slices.Index(pr.paths, p[:end]); q >= 0 {
				pr.prefixes = growTo(pr.prefixes, len(pr.paths))
				pr.prefixes[id] = append(pr.prefixes[id], q)
			}
		}
	}
	if pr.prefixes != nil {
		for _, e := range pr.top {
			if len(e.ids) > 0 {
				e.slot = pr.slots
				pr.slots++
			}
		}
	}
	if len(pr.top) <= maxFew {
		pr.few = make([]topKey, 0, len(pr.top))
		for k, e := range pr.top {
			pr.few = append(pr.few, topKey{k, e})
		}
	}
	h.proj = pr
}

// FieldsRead: process.json reads only the payload (see stage.Kind).
func (h *jsonHandler) FieldsRead() ([]string, bool) { return nil, false }

// projection is the paths process.json decodes, looked up by the keys of
// a record. The field found for a path is the one a full decode gives
// Event.Value: the top-level key equal to the path, else the value under
// the longest top-level key that is a prefix of it (ending before a dot),
// walked down one key per dot; the last of duplicate keys wins.
type projection struct {
	paths []string             // the wanted paths; a path's id is its index
	top   map[string]*topEntry // by top-level key
	// prefixes holds, by path id, the ids of the wanted paths that are
	// proper prefixes of it (ending before a dot), the longest first; nil
	// when no wanted path is below another. Then slots counts the
	// top-level keys that are proper prefixes of some path.
	prefixes [][]int
	slots    int
	// few holds top's entries when they are few: comparing a key with a
	// handful of strings costs less than hashing it.
	few []topKey
}

type topKey struct {
	key string
	e   *topEntry
}

// maxFew is the most top-level keys looked up by comparison.
const maxFew = 8

// entry returns what the top-level key gives, nil when nothing.
func (pr *projection) entry(key []byte) *topEntry {
	if pr.few == nil {
		return pr.top[string(key)]
	}
	for i := range pr.few {
		if string(key) == pr.few[i].key {
			return pr.few[i].e
		}
	}
	return nil
}

// topEntry is what one top-level key gives: the path equal to it, and the
// paths it is a prefix of, found below it through sub.
type topEntry struct {
	exact int   // the id of the path equal to the key, or -1
	ids   []int // the ids of the paths the key is a proper prefix of
	sub   *pnode
	slot  int // where the decoder notes the key's value (see hide)
}

// growTo returns s with length n, its new elements nil.
func growTo(s [][]int, n int) [][]int {
	if len(s) < n {
		s = append(s, make([][]int, n-len(s))...)
	}
	return s
}

// pnode is one key of the paths below a top-level key.
type pnode struct {
	id       int   // the id of the path that ends here, or -1
	ids      []int // the ids of every path at or below this node
	children map[string]*pnode
}

func (n *pnode) add(rest string, id int) {
	for {
		n.ids = append(n.ids, id)
		name, tail, more := strings.Cut(rest, ".")
		c := n.children[name]
		if c == nil {
			c = &pnode{id: -1}
			if n.children == nil {
				n.children = map[string]*pnode{}
			}
			n.children[name] = c
		}
		if !more {
			c.ids = append(c.ids, id)
			c.id = id
			return
		}
		n, rest = c, tail
	}
}

// claim gives path id to the top-level key of length prio when no longer
// key has it: what an earlier, shorter (or the same, duplicated) key set
// for it is removed. It reports whether the key now has the path.
func (d *decoder) claim(ev *stage.Event, h *jsonHandler, id, prio int) bool {
	if d.prio[id] > prio {
		return false
	}
	d.prio[id] = prio
	d.unset(ev, h, id)
	return true
}

func (d *decoder) unset(ev *stage.Event, h *jsonHandler, id int) {
	if d.stored[id] {
		ev.Delete(h.proj.paths[id])
		d.stored[id] = false
	}
}

// topMember decodes the value of a top-level member whose key (of length
// prio) gives the paths of e (nil: none).
func (d *decoder) topMember(ev *stage.Event, h *jsonHandler, e *topEntry, prio, depth int) error {
	if e == nil {
		return d.skip(depth)
	}
	exact := e.exact >= 0 && d.claim(ev, h, e.exact, prio)
	below := false
	for _, id := range e.ids {
		below = d.claim(ev, h, id, prio) || below
	}
	d.skipSpace()
	if below && h.proj.prefixes != nil {
		d.spans[e.slot] = d.pos
	}
	if !below || d.pos >= len(d.data) || d.data[d.pos] != '{' {
		if !exact {
			return d.skip(depth)
		}
		return d.storeID(ev, h, e.exact, depth)
	}
	start := d.pos
	if err := d.object(ev, h, e.sub, prio, depth+1); err != nil {
		return err
	}
	if exact {
		d.setJSON(ev, h.proj.paths[e.exact], start)
		d.stored[e.exact] = true
	}
	return nil
}

// nested decodes the value of a member below a top-level key of length
// prio, which gives the paths of n (nil: none). Of duplicate keys the
// last wins: what an earlier one set is removed.
func (d *decoder) nested(ev *stage.Event, h *jsonHandler, n *pnode, prio, depth int) error {
	if n == nil {
		return d.skip(depth)
	}
	mine := false
	for _, id := range n.ids {
		if d.prio[id] == prio {
			d.unset(ev, h, id)
			mine = true
		}
	}
	d.skipSpace()
	switch {
	case !mine:
		return d.skip(depth)
	case n.children == nil || d.pos >= len(d.data) || d.data[d.pos] != '{':
		if n.id < 0 || d.prio[n.id] != prio {
			return d.skip(depth)
		}
		return d.storeID(ev, h, n.id, depth)
	}
	start := d.pos
	if err := d.object(ev, h, n, prio, depth+1); err != nil {
		return err
	}
	if n.id >= 0 && d.prio[n.id] == prio {
		d.setJSON(ev, h.proj.paths[n.id], start)
		d.stored[n.id] = true
	}
	return nil
}

// storeID decodes the value at pos into the field of wanted path id.
func (d *decoder) storeID(ev *stage.Event, h *jsonHandler, id, depth int) error {
	if err := d.store(ev, h.proj.paths[id], depth); err != nil {
		return err
	}
	d.stored[id] = true
	return nil
}

// hide runs after a record's members are decoded. A full decode finds a
// path below the longest top-level key that is a prefix of it, and
// Event.Value walks down from the longest field name that is: a path that
// key took without holding it is missing. Under a projection, though, the
// key is no field, and Value would walk down from a shorter wanted path
// that is stored instead ({"a.b":{},"a":{"b":{"c":0}}} read for a.b.c and
// a would find a.b.c = 0 in "a"). So then the key's own value is stored
// under its name too, as a full decode has it, and the walk stops there.
func (d *decoder) hide(ev *stage.Event, h *jsonHandler) error {
	pr := h.proj
	for id, p := range pr.paths {
		k := d.prio[id]
		if k < 0 || k == len(p) || d.stored[id] {
			continue
		}
		// The longest stored wanted prefix decides where Value walks
		// from; one as long as the key (or longer) walks as a full
		// decode does. Helpers stored here need not count: a key below
		// which a shorter stored prefix hides a path has one for every
		// path below it.
		shorter := false
		for _, q := range pr.prefixes[id] {
			if d.stored[q] {
				shorter = len(pr.paths[q]) < k
				break
			}
		}
		if !shorter {
			continue
		}
		e := pr.top[p[:k]]
		start := d.spans[e.slot]
		if start < 0 {
			continue // stored already for another path
		}
		d.spans[e.slot] = -1
		end := d.pos
		d.pos = start
		err := d.store(ev, p[:k], 0)
		d.pos = end
		if err != nil {
			return err
		}
	}
	return nil
}
