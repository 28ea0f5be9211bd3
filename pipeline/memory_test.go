package pipeline

// This file tests memory_limit's key, its default and the Go runtime's
// limit that matches it.

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// memory_limit is a plain size or an object with max and overflow;
// queue.max_bytes bounds one queue.
func TestParseMemoryLimit(t *testing.T) {
	const stages = "stages:\n  s: {kind: test.source, listen: x, next: h}\n  h: {kind: test.handler, queue: {max_bytes: 32MiB}}\n"
	for _, tc := range []struct {
		name, top string
		want      MemoryConfig
	}{
		{"unset", "", MemoryConfig{}},
		{"a size", "memory_limit: 128MiB\n", MemoryConfig{Limit: 128 << 20}},
		{"an object", "memory_limit: {max: 64MiB, overflow: block}\n", MemoryConfig{Limit: 64 << 20, Block: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, "name: p\n"+tc.top+stages, nil)
			if cfg.Memory != tc.want {
				t.Errorf("memory %+v, want %+v", cfg.Memory, tc.want)
			}
			if got := cfg.Stage("h").Settings.MaxBytes; got != 32<<20 {
				t.Errorf("queue.max_bytes read as %d", got)
			}
		})
	}
	if _, es := parse(t, "name: p\nmemory_limit: {overflow: drop}\n"+stages, nil); es == nil {
		t.Error("memory_limit.overflow: drop accepted")
	}
	if _, es := parse(t, "name: p\nmemory_limit: 10KiB\n"+stages, nil); es == nil {
		t.Error("memory_limit of 10KiB accepted (under 1MiB)")
	}
}

// The default is a quarter of the budget it names, within its bounds; a
// GOMEMLIMIT in the environment is the budget.
func TestDefaultMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	n, basis := DefaultMemoryLimit()
	if n < minMemoryLimit || n > maxMemoryLimit || basis == "" || basis == "GOMEMLIMIT" {
		t.Fatalf("default %d from %q", n, basis)
	}
	t.Setenv("GOMEMLIMIT", "400MiB") // read by the runtime at start only: set it to match
	setGoLimit(t, 400<<20)
	if n, basis := DefaultMemoryLimit(); n != 100<<20 || basis != "GOMEMLIMIT" {
		t.Fatalf("under GOMEMLIMIT 400MiB: %d from %q, want 100MiB", n, basis)
	}
}

// The Go runtime's limit is the records' limit and half as much again
// (64 MiB at least), no more than 90% of a cgroup's limit.
func TestGoMemoryLimit(t *testing.T) {
	want := int64(192 << 20)
	if c := cgroupLimit(); c > 0 {
		want = min(want, int64(float64(c)*cgroupGoShare))
	}
	if got := GoMemoryLimit(128 << 20); got != want {
		t.Fatalf("for 128MiB: %d, want %d", got, want)
	}
	if got := GoMemoryLimit(16 << 20); got > (16+64)<<20 {
		t.Fatalf("for 16MiB: %d, want at most 80MiB", got)
	}
}

// setGoLimit sets the Go runtime's memory limit to n for the test, and
// puts the previous one back after it.
func setGoLimit(t *testing.T, n int64) {
	prev := debug.SetMemoryLimit(n)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
}

// The cgroup limit is the smallest along the process's cgroup path: in v2
// each cgroup's memory.max, in v1 the own cgroup's limit and memory.stat's
// hierarchical_memory_limit (a parent's limit applies only under
// use_hierarchy, which that figure accounts for). v1 read the own cgroup
// and the root only, and missed a limit set on a parent.
func TestCgroupLimitIn(t *testing.T) {
	write := func(root, path, data string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const none = "9223372036854771712\n" // v1's "no limit"
	for _, c := range []struct {
		name  string
		self  string
		files map[string]string
		want  int64
	}{
		{"v2 parent", "0::/a/b\n", map[string]string{"a/memory.max": "1073741824\n", "a/b/memory.max": "max\n", "memory.max": "max\n"}, 1 << 30},
		{"v2 own", "0::/a/b\n", map[string]string{"a/memory.max": "1073741824\n", "a/b/memory.max": "536870912\n"}, 512 << 20},
		{"v2 none", "0::/a\n", map[string]string{"a/memory.max": "max\n"}, 0},
		{"v1 parent", "5:memory:/a/b\n3:cpu:/x\n", map[string]string{
			"memory/a/b/memory.limit_in_bytes": none, "memory/a/b/memory.stat": "hierarchical_memory_limit 268435456\n",
			"memory/a/memory.limit_in_bytes": "268435456\n", "memory/memory.limit_in_bytes": none}, 256 << 20},
		{"v1 parent without use_hierarchy", "5:memory:/a/b\n", map[string]string{
			"memory/a/b/memory.limit_in_bytes": none, "memory/a/b/memory.stat": "hierarchical_memory_limit " + none,
			"memory/a/memory.limit_in_bytes": "268435456\n"}, 0},
		{"v1 container, own path not mounted", "5:memory:/docker/abc\n", map[string]string{
			"memory/memory.limit_in_bytes": none, "memory/memory.stat": "hierarchical_memory_limit 33554432\n"}, 32 << 20},
		{"v1 own", "5:memory:/a/b\n", map[string]string{"memory/a/b/memory.limit_in_bytes": "67108864\n"}, 64 << 20},
		{"v1 hierarchical", "5:memory,foo:/b\n", map[string]string{
			"memory/b/memory.limit_in_bytes": none, "memory/b/memory.stat": "cache 1\nhierarchical_memory_limit 134217728\nrss 2\n"}, 128 << 20},
		{"v1 none", "5:memory:/b\n", map[string]string{"memory/b/memory.limit_in_bytes": none, "memory/b/memory.stat": "hierarchical_memory_limit " + none}, 0},
		{"no file", "0::/gone\n", nil, 0},
	} {
		root := t.TempDir()
		for path, data := range c.files {
			write(root, path, data)
		}
		if got := cgroupLimitIn(root, []byte(c.self)); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
