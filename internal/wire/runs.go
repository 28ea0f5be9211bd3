package wire

// This file holds Runs: the records a connection's nacks refused and no
// ack has covered yet, kept as runs rather than one entry per record, so
// that a range nack of a million records costs what one record does.

import "sort"

// Run is the records First to Last, both included.
type Run struct{ First, Last uint64 }

// Runs is a set of record numbers kept as sorted, disjoint runs. The zero
// value is empty. Nacks usually come in order (a netio.tcp server writes
// them so), which Add takes in constant time; others are placed where
// they belong.
type Runs struct {
	r []Run
}

// Add adds the records first to last (first <= last) and reports false,
// adding nothing, when one of them is in the set already.
func (s *Runs) Add(first, last uint64) bool {
	i := len(s.r)
	if i > 0 && s.r[i-1].Last >= first {
		i = sort.Search(len(s.r), func(k int) bool { return s.r[k].Last >= first })
		if s.r[i].First <= last {
			return false // overlaps run i
		}
	}
	s.r = append(s.r, Run{})
	copy(s.r[i+1:], s.r[i:])
	s.r[i] = Run{first, last}
	return true
}

// Forget removes every record up to n.
func (s *Runs) Forget(n uint64) {
	k := 0
	for k < len(s.r) && s.r[k].Last <= n {
		k++
	}
	if k > 0 {
		s.r = s.r[:copy(s.r, s.r[k:])]
	}
	if len(s.r) > 0 && s.r[0].First <= n {
		s.r[0].First = n + 1
	}
}

// Contains reports whether record n is in the set.
func (s *Runs) Contains(n uint64) bool {
	i := sort.Search(len(s.r), func(k int) bool { return s.r[k].Last >= n })
	return i < len(s.r) && s.r[i].First <= n
}

// Reach returns the last record of the unbroken stretch from after up:
// the largest m >= after such that every record from after+1 to m is in
// the set.
func (s *Runs) Reach(after uint64) uint64 {
	for _, r := range s.r {
		if r.Last <= after {
			continue
		}
		if r.First > after+1 {
			break
		}
		after = r.Last
	}
	return after
}

// All returns the runs in order; the slice is valid until the set next
// changes.
func (s *Runs) All() []Run { return s.r }
