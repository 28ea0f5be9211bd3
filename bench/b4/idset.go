package b4

// This file holds idSet, the bitmap of acked and stored ids B4 compares.

import (
	"math/bits"
	"sync/atomic"
)

// idSet is a set of the ids base..base+n-1 as a bitmap (one bit per id,
// indexed by id-base): the load client's acked ids and the table's stored
// ids at an eighth of a byte each. Add is safe for concurrent use.
type idSet struct {
	base    int64
	words   []atomic.Uint64
	outside atomic.Uint64 // ids added that fall outside the range
}

func newIDSet(base int64, n int) *idSet {
	return &idSet{base: base, words: make([]atomic.Uint64, (max(n, 0)+63)/64)}
}

// Add puts id in the set; an id outside the range is only counted.
func (s *idSet) Add(id int64) {
	i := id - s.base
	if i < 0 || i >= int64(len(s.words))*64 {
		s.outside.Add(1)
		return
	}
	s.words[i/64].Or(1 << (i % 64))
}

// Has reports whether id is in the set.
func (s *idSet) Has(id int64) bool {
	i := id - s.base
	if i < 0 || i >= int64(len(s.words))*64 {
		return false
	}
	return s.words[i/64].Load()&(1<<(i%64)) != 0
}

// Len is the number of ids in the set (those outside the range not
// included).
func (s *idSet) Len() int {
	n := 0
	for i := range s.words {
		n += bits.OnesCount64(s.words[i].Load())
	}
	return n
}

// Missing returns how many ids of s are not in t (over the same range), and
// the first of them (-1 if none).
func (s *idSet) Missing(t *idSet) (n int, first int64) {
	first = -1
	for i := range s.words {
		w := s.words[i].Load()
		if i < len(t.words) && t.base == s.base {
			w &^= t.words[i].Load()
		}
		if w == 0 {
			continue
		}
		if first < 0 {
			first = s.base + int64(i)*64 + int64(bits.TrailingZeros64(w))
		}
		n += bits.OnesCount64(w)
	}
	return n, first
}
