package measure

// This file tests the CPU and /proc figures against this process.

import (
	"os"
	"runtime"
	"testing"
)

// TestCPU checks that this process's CPU time is read and grows with work.
func TestCPU(t *testing.T) {
	before := CPU()
	x := 0
	for i := range 50_000_000 {
		x += i & 7
	}
	_ = x
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
	if ProcessCPU(os.Getpid()) <= 0 || TreeCPU(os.Getppid()) <= 0 {
		t.Fatal("no CPU time read from /proc")
	}
	if TreeCPU(0) != 0 {
		t.Fatal("TreeCPU(0) should be 0")
	}
	if busy, _ := Machine(); busy <= 0 {
		t.Fatal("no machine CPU time read from /proc/stat")
	}
}
