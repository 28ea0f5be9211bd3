package report

// This file tests Summarize and the printing of figures.

import "testing"

func TestSummarize(t *testing.T) {
	if s := Summarize([]float64{3, 1, 2, 10}); s != (Summary{Min: 1, Median: 2.5, Max: 10, N: 4}) {
		t.Fatal(s)
	}
	if s := Summarize([]float64{3, 1, 2}); s.Median != 2 || s.N != 3 {
		t.Fatal(s)
	}
	if s := Summarize(nil); s != (Summary{}) {
		t.Fatal(s)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Rate(950), "950"},
		{Rate(409_400), "409.4k"},
		{Rate(2_054_000), "2.05M"},
		{MiB(143 << 20), "143 MiB"},
		{Met(true), "yes"},
		{Met(false), "**no**"},
		{Summary{Min: 0.921, Median: 1.17, Max: 1.28}.Ratios(), "0.92 / 1.17 / 1.28"},
		{Summary{Min: 9.06e6, Median: 11.9e6, Max: 13.1e6}.Rates(), "9.06M / 11.90M / 13.10M"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
