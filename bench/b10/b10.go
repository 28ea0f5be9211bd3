package b10

// This file runs B10: the sustained rate, then the soak in rounds of
// fresh connections, sampling the pipeline process.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/bench/b4"
	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/internal/loadgen"
)

// Config sizes the soak; the zero value is the full B10.
type Config struct {
	Duration time.Duration // the soak; 0: 20m
	// SustainDuration is the windowed run that measures the sustained
	// rate, before the soak, on its own pipeline process; 0: 15s.
	SustainDuration time.Duration
	Fraction        float64 // the soak's rate over the sustained; 0: 0.5
	Malformed       float64 // fraction of records malformed; 0: 0.05
	DropConns       float64 // fraction of connections dropped abruptly; 0: 0.01
	Conns           int     // client connections at a time; 0: 64
	// Round is how long a connection lives: the soak runs Loops loops of
	// Conns/Loops connections each, every loop a sequence of rounds of
	// fresh connections, staggered, so that connections come and go
	// (and the dropped ones are replaced) all the time. 0: 30s, and 4.
	Round time.Duration
	Loops int
	// Every is the sampling interval; 0: 5s.
	Every   time.Duration
	Pipectl string    // the pipectl binary; "": build cmd/pipectl
	DSN     string    // existing server instead of a throwaway one
	Log     io.Writer // progress; nil: none
}

func (c *Config) fill() {
	if c.Duration <= 0 {
		c.Duration = 20 * time.Minute
	}
	if c.SustainDuration <= 0 {
		c.SustainDuration = 15 * time.Second
	}
	if c.Fraction <= 0 {
		c.Fraction = 0.5
	}
	if c.Malformed <= 0 {
		c.Malformed = 0.05
	}
	if c.DropConns <= 0 {
		c.DropConns = 0.01
	}
	if c.Conns <= 0 {
		c.Conns = 64
	}
	if c.Round <= 0 {
		c.Round = 30 * time.Second
	}
	if c.Loops <= 0 {
		c.Loops = 4
	}
	c.Loops = min(c.Loops, c.Conns)
	if c.Every <= 0 {
		c.Every = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Sample is the pipeline process's figures at one moment of the soak.
type Sample struct {
	At         time.Duration // from the soak's start
	RSS        int64         // VmRSS
	Goroutines int           // go_goroutines from /metrics; -1 if unread
	Files      int           // entries of /proc/PID/fd
	Acked      uint64        // acked so far
}

// Result is what Run measured.
type Result struct {
	Config    Config
	Sustained float64 // acked rows/s of the windowed run
	Rate      float64 // offered in the soak
	Sent, Acked, Nacked, Malformed,
	Unanswered uint64 // on connections dropped
	Nacks         map[string]uint64
	Conns         int // connections made
	Dropped       int // of them dropped abruptly
	Rounds        int
	TableRows     int64
	Samples       []Sample
	PeakRSS       int64 // VmHWM at the end
	Elapsed       time.Duration
	MalformedAcks uint64 // malformed ids acked: must be 0
}

// Run runs B10 and checks the soak's behaviour: every connection ended
// cleanly or was dropped on purpose, every record was answered except on
// dropped connections, no malformed record was acked, every acked id is
// stored, and the pipeline stayed up and drained cleanly.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, Nacks: map[string]uint64{}}
	dir, err := os.MkdirTemp("", "b10-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := rig.Pipectl(ctx, "b10", cfg.Pipectl, dir, "", cfg.Log)
	if err != nil {
		return nil, err
	}
	dsn := cfg.DSN
	if dsn == "" {
		srv, _, err := rig.StartPostgres(ctx, "b10", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		dsn = srv.DSN()
	}
	if res.Sustained, err = sustained(ctx, bin, dir, dsn, cfg); err != nil {
		return nil, err
	}
	res.Rate = cfg.Fraction * res.Sustained
	fmt.Fprintf(cfg.Log, "b10: sustained %.0f rows/s; soaking at %.0f records/s for %v...\n", res.Sustained, res.Rate, cfg.Duration)
	if err := soak(ctx, bin, dir, dsn, res); err != nil {
		return res, err
	}
	return res, nil
}

// sustained measures the acked rate of windowed clients on a fresh
// pipeline process.
func sustained(ctx context.Context, bin, dir, dsn string, cfg Config) (float64, error) {
	const table = "b10_sustain"
	if err := rig.CreateTable(ctx, dsn, table); err != nil {
		return 0, err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), dsn, table)
	p, err := b4.StartPipectl(ctx, bin, dir, dsn, table, "block")
	if err != nil {
		return 0, err
	}
	lr, err := loadgen.Run(ctx, loadgen.Config{Addr: p.Addr(), Conns: cfg.Conns, Duration: cfg.SustainDuration, Window: 1000})
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err = errors.Join(err, p.Stop(sctx)); err != nil {
		return 0, fmt.Errorf("b10: sustained run: %w", err)
	}
	if err := lr.Err(); err != nil {
		return 0, fmt.Errorf("b10: sustained run: %w", err)
	}
	if lr.AckedPerSec() <= 0 {
		return 0, errors.New("b10: sustained run: nothing acked")
	}
	return lr.AckedPerSec(), nil
}

// soak runs the soak on a fresh pipeline process and table, and checks it.
func soak(ctx context.Context, bin, dir, dsn string, res *Result) error {
	cfg := res.Config
	const table = "b10"
	if err := rig.CreateTable(ctx, dsn, table); err != nil {
		return err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), dsn, table)
	p, err := b4.StartPipectl(ctx, bin, dir, dsn, table, "block")
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			p.Stop(sctx)
		}
	}()

	// Ids: round r of loop l starts at 1 + (r*Loops+l)*perRound, where
	// perRound bounds what one round's connections can send.
	perLoop := cfg.Conns / cfg.Loops
	rate := res.Rate / float64(cfg.Loops)
	perRound := (int(cfg.Round.Seconds()*rate/float64(perLoop)) + 2) * perLoop
	rounds := int(cfg.Duration/cfg.Round) + 2
	acked := b4.NewIDSet(1, rounds*cfg.Loops*perRound)
	var nAcked atomic.Uint64
	var malformedAcks atomic.Uint64

	start := time.Now()
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(cfg.Every)
		defer t.Stop()
		for {
			res.Samples = append(res.Samples, sample(ctx, p, start, &nAcked))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})

	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	end := start.Add(cfg.Duration)
	for l := range cfg.Loops {
		wg.Go(func() {
			// Stagger the loops' rounds: the first is shorter.
			first := cfg.Round * time.Duration(l+1) / time.Duration(cfg.Loops)
			for r := 0; r < rounds && ctx.Err() == nil; r++ {
				d := min(cfg.Round, time.Until(end))
				if r == 0 {
					d = min(first, d)
				}
				if d < time.Second {
					return
				}
				lc := loadgen.Config{Addr: p.Addr(), Conns: perLoop, Duration: d, Rate: rate, Window: 1000,
					StartID: 1 + int64(r*cfg.Loops+l)*int64(perRound), Malformed: cfg.Malformed, DropConns: cfg.DropConns,
					Acked: &nAcked, AckTimeout: 2 * time.Minute}
				lc.OnAck = func(id int64) {
					if lc.IsMalformed(id) {
						malformedAcks.Add(1)
					}
					acked.Add(id)
				}
				lr, err := loadgen.Run(ctx, lc)
				mu.Lock()
				if err == nil {
					err = lr.Err()
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("loop %d round %d: %w", l, r, err))
				} else if lr.Acked+lr.Nacked+lr.Unanswered != lr.Sent {
					errs = append(errs, fmt.Errorf("loop %d round %d: %d sent, %d acked, %d nacked, %d unanswered on dropped connections",
						l, r, lr.Sent, lr.Acked, lr.Nacked, lr.Unanswered))
				}
				if lr != nil {
					res.Rounds++
					res.Sent += lr.Sent
					res.Acked += lr.Acked
					res.Nacked += lr.Nacked
					res.Malformed += lr.Malformed
					res.Unanswered += lr.Unanswered
					res.Conns += lr.Conns
					res.Dropped += lr.Dropped
					for k, v := range lr.Nacks {
						res.Nacks[k] += v
					}
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	close(done)
	sampler.Wait()
	_, res.PeakRSS = measure.ProcessRSS(p.PID())
	res.MalformedAcks = malformedAcks.Load()
	fmt.Fprintf(cfg.Log, "b10: soak over after %v: %d sent, %d acked, %d nacked, %d connections (%d dropped)\n",
		res.Elapsed.Round(time.Second), res.Sent, res.Acked, res.Nacked, res.Conns, res.Dropped)

	if p.Exited() {
		errs = append(errs, errors.New("b10: pipectl exited during the soak"))
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	stopped = true
	if err := p.Stop(sctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("b10: %w", err)
	}
	switch {
	case res.MalformedAcks > 0:
		return fmt.Errorf("b10: %d malformed records acked", res.MalformedAcks)
	case res.Malformed == 0 || res.Nacked+res.Unanswered < res.Malformed:
		return fmt.Errorf("b10: %d malformed records sent, %d nacked, %d unanswered on dropped connections", res.Malformed, res.Nacked, res.Unanswered)
	case acked.Outside() > 0:
		return fmt.Errorf("b10: %d acked ids outside the range", acked.Outside())
	case acked.Len() != int(res.Acked):
		return fmt.Errorf("b10: %d acks counted, %d distinct acked ids", res.Acked, acked.Len())
	}
	if res.TableRows, err = b4.CheckStored(ctx, dsn, table, acked); err != nil {
		return fmt.Errorf("b10: %w", err)
	}
	return nil
}

// sample reads the pipeline process's figures.
func sample(ctx context.Context, p *b4.Pipectl, start time.Time, acked *atomic.Uint64) Sample {
	s := Sample{At: time.Since(start).Round(time.Second), Goroutines: -1, Files: -1, Acked: acked.Load()}
	s.RSS, _ = measure.ProcessRSS(p.PID())
	if g, err := p.Metric(ctx, "go_goroutines"); err == nil {
		s.Goroutines = int(g)
	}
	if fds, err := os.ReadDir("/proc/" + strconv.Itoa(p.PID()) + "/fd"); err == nil {
		s.Files = len(fds)
	}
	return s
}
