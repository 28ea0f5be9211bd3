package b8

// This file makes B8's messages and their rows, and the checksum that
// proves every row stored once.

import (
	"bufio"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
)

// row is one message's columns as every contender stores them.
type row struct {
	host, app, msg []byte
}

// message appends message i (RFC 5424, no trailing newline) to b and
// returns it with its row's columns, which point into the result.
//
//	<165>1 2026-11-25T22:34:56.123456Z web-07.example.com app-3 1042 ID47 - request 17 handled in 12 ms status=200
func message(b []byte, i int) ([]byte, row) {
	b = append(b, "<165>1 2026-11-25T22:"...)
	b = append2(b, (i/60)%60)
	b = append(b, ':')
	b = append2(b, i%60)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(100000+i%900000), 10)
	b = append(b, "Z "...)
	h0 := len(b)
	b = append(b, "web-"...)
	b = append2(b, i%64)
	b = append(b, ".example.com"...)
	h1 := len(b)
	b = append(b, ' ')
	a0 := len(b)
	b = append(b, "app-"...)
	b = strconv.AppendInt(b, int64(i%8), 10)
	a1 := len(b)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(1000+i%97), 10)
	b = append(b, " ID47 - "...)
	m0 := len(b)
	b = append(b, "request "...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, " handled in "...)
	b = strconv.AppendInt(b, int64(i%50), 10)
	b = append(b, " ms status=200"...)
	return b, row{host: b[h0:h1], app: b[a0:a1], msg: b[m0:]}
}

func append2(b []byte, n int) []byte {
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

// checksum is an order-independent digest of a set of rows: the number
// of rows and the sum of the first 60 bits of md5(host TAB app TAB msg)
// over them. checksumSQL computes the same in PostgreSQL; a NULL
// column leaves its row out of the sum, so it shows as a mismatch.
type checksum struct {
	rows int64
	sum  big.Int
}

func (c *checksum) add(r row, scratch []byte) []byte {
	scratch = append(scratch[:0], r.host...)
	scratch = append(scratch, '\t')
	scratch = append(scratch, r.app...)
	scratch = append(scratch, '\t')
	scratch = append(scratch, r.msg...)
	h := md5.Sum(scratch)
	var v big.Int
	v.SetUint64(binary.BigEndian.Uint64(h[:8]) >> 4)
	c.sum.Add(&c.sum, &v)
	c.rows++
	return scratch
}

func (c *checksum) String() string { return fmt.Sprintf("%d rows, sum %s", c.rows, c.sum.String()) }

// checksumSQL returns the query that computes a checksum of table.
func checksumSQL(table string) string {
	return "SELECT count(*), coalesce(sum(('x' || substr(md5(host || E'\\t' || app || E'\\t' || msg), 1, 15))" +
		"::bit(60)::bigint), 0)::text FROM " + ident(table)
}

// workload is the benchmark's input, built once: per connection, the
// octet-counted stream; per psql process, a COPY text file; and the
// checksum of all rows.
type workload struct {
	streams [][]byte // octet-counted, one per connection
	files   []string // COPY text files (host TAB app TAB msg), one per psql
	want    checksum
}

// newWorkload builds n messages split over conns connections, and, when
// dir is not empty, the same rows as conns COPY files in dir; sum computes
// their checksum.
func newWorkload(n, conns int, dir string, sum bool) (*workload, error) {
	w := &workload{streams: make([][]byte, conns)}
	var ws []*bufio.Writer
	var fs []*os.File
	if dir != "" {
		for c := range conns {
			path := filepath.Join(dir, fmt.Sprintf("rows-%d.tsv", c))
			f, err := os.Create(path)
			if err != nil {
				return nil, err
			}
			fs = append(fs, f)
			ws = append(ws, bufio.NewWriterSize(f, 1<<20))
			w.files = append(w.files, path)
		}
	}
	var msg, line, scratch []byte
	for i := range n {
		c := i % conns
		var r row
		msg, r = message(msg[:0], i)
		s := strconv.AppendInt(w.streams[c], int64(len(msg)), 10)
		s = append(s, ' ')
		w.streams[c] = append(s, msg...)
		if sum {
			scratch = w.want.add(r, scratch)
		}
		if ws != nil {
			// No column holds a tab, newline or backslash: no escaping.
			line = append(line[:0], r.host...)
			line = append(append(line, '\t'), r.app...)
			line = append(append(line, '\t'), r.msg...)
			ws[c].Write(append(line, '\n'))
		}
	}
	var err error
	for i := range ws {
		err = errors.Join(err, ws[i].Flush(), fs[i].Close())
	}
	if err != nil {
		return nil, fmt.Errorf("b8: write the COPY files: %w", err)
	}
	return w, nil
}
