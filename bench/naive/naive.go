package naive

// This file holds the naive server: a goroutine per connection that
// decodes and inserts each record before acking it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// MaxFrame is the longest record accepted, as netio.tcp's default.
const MaxFrame = 64 << 10

// Config configures a Server.
type Config struct {
	Listen string // host:port; "" means 127.0.0.1:0
	DSN    string // PostgreSQL connection string
	Table  string // table (id bigint primary key, body jsonb), which must exist
	// MaxConns is the pool size; 0 means 64, one per benchmark connection,
	// so that the baseline is never short of database connections.
	MaxConns int32
	Logger   *zap.Logger // nil: no logs
}

// Server is a running naive server.
type Server struct {
	ln   net.Listener
	pool *pgxpool.Pool
	sql  string
	log  *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Start connects to PostgreSQL and starts listening.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, errors.New("naive: cannot parse the DSN") // not wrapped: it may quote a password
	}
	pc.MaxConns = cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("naive: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("naive: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("naive: %w", err)
	}
	tbl := pgx.Identifier{cfg.Table}.Sanitize()
	s := &Server{
		ln: ln, pool: pool, log: log, conns: map[net.Conn]struct{}{},
		sql: "INSERT INTO " + tbl + " (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Go(s.accept)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening, ends every connection (unblocking their reads),
// waits for their goroutines and closes the pool.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.cancel()
	s.wg.Wait()
	s.pool.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			if err := s.serve(c); err != nil {
				s.log.Debug("connection ended", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
			}
		})
	}
}

// record is the part of a record the server needs.
type record struct {
	ID *int64 `json:"id"`
}

// serve handles one connection: for each record, INSERT, then ack.
func (s *Server) serve(c net.Conn) error {
	r := bufio.NewReaderSize(c, MaxFrame+1)
	w := bufio.NewWriter(c)
	var seq uint64
	var out []byte
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			seq++
			// Skip the rest of the oversized record.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return err
			}
			out = reply(out[:0], seq, errors.New("record too large"))
			if _, err := w.Write(out); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
		if len(line) == 0 {
			continue
		}
		seq++
		var rec record
		if err = json.Unmarshal(line, &rec); err == nil && rec.ID == nil {
			err = errors.New(`missing field "id"`)
		}
		if err == nil {
			_, err = s.pool.Exec(s.ctx, s.sql, *rec.ID, string(line))
		}
		out = reply(out[:0], seq, err)
		if _, err := w.Write(out); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// reply appends the nack (when err is set) and the ack for record seq.
func reply(b []byte, seq uint64, err error) []byte {
	if err != nil {
		b = append(b, "nack "...)
		b = strconv.AppendUint(b, seq, 10)
		b = append(b, ' ')
		b = append(b, bytes.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, []byte(err.Error()))...)
		b = append(b, '\n')
	}
	b = append(b, "ack "...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '\n')
}
