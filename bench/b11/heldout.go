package b11

// This file holds the held-out check of issue 24: the store it gives,
// the load (each key owned by one connection, seq rising), and the check
// of the table afterwards.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/pipeline"
)

// HeldOutConfig sizes the held-out check; the zero value is the issue's:
// 16 connections send 400,000 updates over 4,000 keys, method copy and
// B3's batching.
type HeldOutConfig struct {
	Conns  int    // connections; 0: 16
	Keys   int    // keys, a multiple of Conns; 0: 4,000
	Method string // copy or insert; "": copy
	Batch  int    // the store's batch max; 0: B3's (2,000, linger 2 ms)
	Window int    // unacked records per connection; 0: 1,000
}

// Updates is the number of updates of each key: seq runs 0…Updates-1.
const Updates = 100

// run is how many consecutive updates of a key a connection sends
// before the next key's.
const run = 10

func (c *HeldOutConfig) fill() {
	c.Conns = cmpOr(c.Conns, 16)
	c.Keys = cmpOr(c.Keys, 4000)
	c.Window = cmpOr(c.Window, 1000)
	if c.Method == "" {
		c.Method = "copy"
	}
}

// HeldOutResult is what a held-out run did.
type HeldOutResult struct {
	Records int
	Acked   uint64
	Load    *loadgen.Result
}

// HeldOut runs the held-out check against a fresh table on dsn and
// returns an error when it fails: a record not acked, a key missing, a
// key not at its last update.
func HeldOut(ctx context.Context, dsn, table string, cfg HeldOutConfig) (*HeldOutResult, error) {
	cfg.fill()
	if cfg.Keys%cfg.Conns != 0 {
		return nil, fmt.Errorf("b11: %d keys do not spread evenly over %d connections", cfg.Keys, cfg.Conns)
	}
	if err := rig.DropTable(ctx, dsn, table); err != nil {
		return nil, err
	}
	batch := "batch: {max: 2000, linger: 2ms}"
	if cfg.Batch > 0 {
		batch = "batch: " + strconv.Itoa(cfg.Batch)
	}
	store := storeYAML(heldOutStore(cfg.Method, batch))
	p, addr, err := rig.StartYAML(ctx, "b11-heldout.yaml", store, env(dsn, table), pipeline.Options{})
	if err != nil {
		return nil, err
	}
	records := cfg.Keys * Updates
	lr, err := loadgen.Run(ctx, loadgen.Config{
		Addr: addr, Conns: cfg.Conns, Records: records, Window: cfg.Window,
		Record: heldOutRecord(cfg.Conns, cfg.Keys/cfg.Conns),
	})
	err = errors.Join(err, stop(ctx, p))
	if err != nil {
		return nil, err
	}
	res := &HeldOutResult{Records: records, Acked: lr.Acked, Load: lr}
	if err := lr.Err(); err != nil {
		return res, err
	}
	if lr.Acked != uint64(records) || lr.Nacked != 0 {
		return res, fmt.Errorf("b11: %d updates: %d acked, %d nacked %v", records, lr.Acked, lr.Nacked, lr.Nacks)
	}
	return res, checkLatest(ctx, dsn, table, int64(cfg.Keys), "seq = "+strconv.Itoa(Updates-1))
}

// heldOutStore is the store of the held-out check.
func heldOutStore(method, batch string) string {
	return `    columns: {id: id, seq: seq, body: $}
    types: {id: bigint, seq: bigint}
    key: [id]
    conflict: update
    shard_by: [id]
    workers: 4
    method: ` + method + `
    ` + batch + `
`
}

// heldOutRecord makes the held-out load's records from loadgen's ids
// (0, 1, ...; connection c sends ids c, c+conns, ...): connection c owns
// keys c, c+conns, ... (perConn of them) and sends each key's updates in
// runs of ten, taking the keys in turn, so that seq rises 0…99 per key.
func heldOutRecord(conns, perConn int) func(b []byte, id int64) []byte {
	return func(b []byte, id int64) []byte {
		c, j := id%int64(conns), id/int64(conns)
		local := (j / run) % int64(perConn)
		seq := j/(run*int64(perConn))*run + j%run
		return keyedRecord(b, local*int64(conns)+c, seq, id)
	}
}

// keyedRecord is B3's record of id with its id field set to key and a
// field seq first.
func keyedRecord(b []byte, key, seq, id int64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, key, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	mark := len(b)
	b = loadgen.Record(b, id) // {"id":id,"host":...
	i := bytes.IndexByte(b[mark:], ',')
	return append(b[:mark], b[mark+i:]...)
}

// checkLatest checks that table holds keys rows, each whose seq meets
// want (an SQL condition) and whose record is the one of that seq.
func checkLatest(ctx context.Context, dsn, table string, keys int64, want string) error {
	var rows, wrong, mixed int64
	if err := rig.QueryInt(ctx, dsn, "SELECT count(*) FROM "+rig.Ident(table), &rows); err != nil {
		return err
	}
	if err := rig.QueryInt(ctx, dsn, "SELECT count(*) FROM "+rig.Ident(table)+" t WHERE NOT ("+want+")", &wrong); err != nil {
		return err
	}
	if err := rig.QueryInt(ctx, dsn, "SELECT count(*) FROM "+rig.Ident(table)+
		" WHERE (body->>'seq')::bigint IS DISTINCT FROM seq OR (body->>'id')::bigint IS DISTINCT FROM id", &mixed); err != nil {
		return err
	}
	switch {
	case rows != keys:
		return fmt.Errorf("b11: table %s holds %d rows, want %d", table, rows, keys)
	case wrong > 0:
		return fmt.Errorf("b11: %d of %d keys are not at their last update (%s)", wrong, keys, want)
	case mixed > 0:
		return fmt.Errorf("b11: %d rows hold a record other than their seq's", mixed)
	}
	return nil
}
