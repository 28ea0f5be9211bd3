package port

// This file holds the Posts waiting for room: their list, in order, and
// their reuse.

// poster is a Post waiting for room. A Get that frees room moves pk into
// the ring and sends nil on done; Close sends ErrClosed.
type poster[T any] struct {
	pk         Packet[T]
	done       chan error
	prev, next *poster[T]
	queued     bool
}

// posterList is an intrusive FIFO of waiting posters; remove is O(1) so a
// cancelled Post leaves cheaply.
type posterList[T any] struct {
	head, tail *poster[T]
	len        int
}

func (l *posterList[T]) pushBack(pw *poster[T]) {
	pw.queued = true
	pw.prev, pw.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = pw
	} else {
		l.head = pw
	}
	l.tail = pw
	l.len++
}

func (l *posterList[T]) popFront() *poster[T] {
	pw := l.head
	l.remove(pw)
	return pw
}

func (l *posterList[T]) remove(pw *poster[T]) {
	if pw.prev != nil {
		pw.prev.next = pw.next
	} else {
		l.head = pw.next
	}
	if pw.next != nil {
		pw.next.prev = pw.prev
	} else {
		l.tail = pw.prev
	}
	pw.prev, pw.next, pw.queued = nil, nil, false
	l.len--
}

func (p *Port[T]) getPoster() *poster[T] {
	if pw, ok := p.posterPool.Get().(*poster[T]); ok {
		return pw
	}
	return &poster[T]{done: make(chan error, 1)}
}

func (p *Port[T]) putPoster(pw *poster[T]) {
	pw.pk = Packet[T]{}
	p.posterPool.Put(pw)
}
