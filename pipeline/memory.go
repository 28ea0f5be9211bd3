package pipeline

// This file holds the pipeline's memory limit: the memory_limit key, its
// default (a fraction of the memory the process may use), the Go
// runtime's limit that matches it, and the wiring of the count into the
// sources.

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/stagedserver/seda/stage"
)

// MemoryConfig is the top-level memory_limit: the bytes of records the
// pipeline may hold (queued, in batches, in buffers its events keep),
// and what its sources do past them.
type MemoryConfig struct {
	// Limit is the bound in bytes; 0 means the default
	// (DefaultMemoryLimit).
	Limit int64
	// Block makes the sources stop reading past the limit (TCP pushes
	// back) instead of refusing what they read (nack busy, 503, a
	// counted drop).
	Block bool
}

// The default memory limit is a quarter of the memory the process may
// use: the other three quarters are the Go runtime's (garbage not yet
// collected, the heap's own overhead, stacks), the connections' buffers
// and what the stages keep besides records (decoded fields, database
// buffers). It is kept between these bounds: below the floor a record
// of 64 KiB would be refused for a few held; past the ceiling what is
// held is minutes of work, not a burst.
const (
	memoryShare     = 4
	minMemoryLimit  = 16 << 20
	maxMemoryLimit  = 1 << 30
	assumedMemory   = 4 << 30 // the budget when none can be read
	minGoHeadroom   = 64 << 20
	cgroupGoShare   = 0.9 // the Go runtime's limit is at most this share of a cgroup's
	cgroupUnlimited = 1 << 62
)

// memoryField is memory_limit's spec: a size, or an object with the size
// (max) and the overflow.
func memoryField() stage.Field {
	return stage.Field{Name: "memory_limit", Type: stage.Object,
		Doc: "the bytes of records the pipeline may hold (queued, in batches, in buffers its events keep); also written as a plain size (max); unset: a quarter of the memory the process may use (GOMEMLIMIT, else its cgroup's memory.max, else the machine's memory), 16MiB to 1GiB",
		Fields: []stage.Field{
			{Name: "max", Type: stage.Size, Range: stage.Between(1<<20, 1<<50), Doc: "the bound in bytes"},
			{Name: "overflow", Type: stage.String, Default: "reject", Enum: []string{"reject", "block"}, Doc: "past it, reject: sources refuse what they read (netio.tcp nack N busy, netio.http 503, netio.udp drops it, counted); block: sources stop reading (TCP pushes back)"},
		}}
}

// memoryConfig reads memory_limit from the top level's bound keys.
func memoryConfig(top stage.Config) MemoryConfig {
	m := top.Object("memory_limit")
	return MemoryConfig{Limit: m.Size("max"), Block: m.String("overflow") == "block"}
}

// DefaultMemoryLimit returns the memory limit of a pipeline whose file
// sets none, and what it is a quarter of: "GOMEMLIMIT" (set in the
// environment), "cgroup" (the process's cgroup memory.max, v2 or v1),
// "physical memory", or "assumed" (4 GiB, when none can be read).
func DefaultMemoryLimit() (int64, string) {
	budget, basis := memoryBudget()
	return min(max(budget/memoryShare, minMemoryLimit), maxMemoryLimit), basis
}

func memoryBudget() (int64, string) {
	if os.Getenv("GOMEMLIMIT") != "" {
		if n := debug.SetMemoryLimit(-1); n > 0 && n < math.MaxInt64 {
			return n, "GOMEMLIMIT"
		}
	}
	if n := cgroupLimit(); n > 0 {
		return n, "cgroup"
	}
	if n := physicalMemory(); n > 0 {
		return n, "physical memory"
	}
	return assumedMemory, "assumed"
}

// GoMemoryLimit returns the Go runtime's soft memory limit that matches
// a pipeline memory limit of limit bytes: the limit and half as much
// again (at least 64 MiB) for what the records' holders cost besides
// the records, and no more than 90% of the process's cgroup limit.
// With memory_limit 128MiB it is 192 MiB.
func GoMemoryLimit(limit int64) int64 {
	n := limit + max(limit/2, minGoHeadroom)
	if c := cgroupLimit(); c > 0 {
		n = min(n, int64(float64(c)*cgroupGoShare))
	}
	return n
}

// SetGoMemoryLimit sets the Go runtime's soft memory limit to match the
// pipeline's memory limit (GoMemoryLimit), unless the environment sets
// GOMEMLIMIT: the user's choice stands. It returns the limit now in
// force and whether it set it. pipectl run calls it; a program that
// embeds pipelines decides for itself.
func SetGoMemoryLimit(p *Pipeline) (int64, bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), false
	}
	n := GoMemoryLimit(p.mem.Limit())
	debug.SetMemoryLimit(n)
	return n, true
}

// MemoryLimit returns the pipeline's memory limit in bytes, as set in
// its file or by default.
func (p *Pipeline) MemoryLimit() int64 { return p.mem.Limit() }

// goMemoryLimit returns the Go runtime's memory limit, 0 when it has
// none.
func goMemoryLimit() int64 {
	if n := debug.SetMemoryLimit(-1); n < math.MaxInt64 {
		return n
	}
	return 0
}

// cgroupLimit returns the memory limit of the process's cgroup (v2
// memory.max, the smallest along its path; or v1's, see cgroupLimitIn),
// 0 when there is none or it cannot be read.
func cgroupLimit() int64 {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	return cgroupLimitIn("/sys/fs/cgroup", data)
}

// cgroupLimitIn is cgroupLimit for a cgroup file system mounted at root
// and a /proc/self/cgroup of self.
func cgroupLimitIn(root string, self []byte) int64 {
	var v2, v1 string
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1 = parts[2]
		}
	}
	best := int64(0)
	take := func(n int64) {
		if n > 0 && n < cgroupUnlimited && (best == 0 || n < best) {
			best = n
		}
	}
	if v2 != "" {
		// The limits of the cgroup and of its ancestors all apply; in a
		// container the path may be the namespace's root only.
		for dir := filepath.Clean("/" + v2); ; dir = filepath.Dir(dir) {
			take(readLimit(filepath.Join(root, dir, "memory.max")))
			if dir == "/" {
				break
			}
		}
	}
	if v1 != "" {
		// The process's own cgroup's limit, and memory.stat's
		// hierarchical_memory_limit, the smallest along the path as the
		// kernel applies it: an ancestor's limit_in_bytes applies only
		// under use_hierarchy, so the ancestors are not read one by one.
		mem := filepath.Join(root, "memory")
		own := filepath.Join(mem, filepath.Clean("/"+v1))
		take(readLimit(filepath.Join(own, "memory.limit_in_bytes")))
		take(readStat(filepath.Join(own, "memory.stat"), "hierarchical_memory_limit"))
		// The mount's root too: in a container without a cgroup
		// namespace the own path (/docker/ID) is not there to read.
		take(readLimit(filepath.Join(mem, "memory.limit_in_bytes")))
		take(readStat(filepath.Join(mem, "memory.stat"), "hierarchical_memory_limit"))
	}
	return best
}

// readStat reads one "key value" line of a cgroup stat file; 0 when it
// has none.
func readStat(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// readLimit reads a cgroup limit file: a number, or "max"; 0 when it is
// not a number.
func readLimit(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// physicalMemory returns the machine's memory (Linux: /proc/meminfo's
// MemTotal), 0 when it cannot be read.
func physicalMemory() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return n << 10
				}
			}
		}
	}
	return 0
}
