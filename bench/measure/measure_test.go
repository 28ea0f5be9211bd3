package measure

// This file tests the CPU and /proc figures against this process.

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// sink keeps busy's work from being optimised away.
var sink int

// busy spends some CPU time: tens of milliseconds.
func busy() {
	x := 0
	for i := range 50_000_000 {
		x += i & 7
	}
	sink += x
}

// TestCPU checks that this process's CPU time is read and grows with work.
func TestCPU(t *testing.T) {
	before := CPU()
	busy()
	if after := CPU(); after <= before {
		t.Fatalf("CPU did not grow over a busy loop: %v then %v", before, after)
	}
}

// TestProc checks the /proc figures against this process, on Linux.
func TestProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		if ProcessCPU(os.Getpid()) != 0 || RSS() != 0 {
			t.Fatal("figures other than CPU should be 0 off Linux")
		}
		return
	}
	if RSS() <= 0 || PeakRSS() <= 0 {
		t.Fatalf("RSS %d, peak %d", RSS(), PeakRSS())
	}
	rss, peak := ProcessRSS(os.Getpid())
	if rss <= 0 || peak < rss {
		t.Fatalf("ProcessRSS(self): %d, peak %d", rss, peak)
	}
	// /proc counts CPU time in clock ticks (10 ms): a test binary that has
	// run less than one reads 0, and make test once failed so. Work until
	// a tick has passed, for 20 s at most.
	deadline := time.Now().Add(20 * time.Second)
	for ProcessCPU(os.Getpid()) <= 0 && time.Now().Before(deadline) {
		busy()
	}
	if self, tree := ProcessCPU(os.Getpid()), TreeCPU(os.Getppid()); self <= 0 || tree < self {
		t.Fatalf("CPU time from /proc: this process %v, its parent's tree (which holds it) %v", self, tree)
	}
	if TreeCPU(0) != 0 {
		t.Fatal("TreeCPU(0) should be 0")
	}
	if busy, _ := Machine(); busy <= 0 {
		t.Fatal("no machine CPU time read from /proc/stat")
	}
}
