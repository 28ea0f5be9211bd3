package report

// This file holds the spread of figures (Summary) and their printing as
// ratios, rates, sizes and met targets.

import (
	"fmt"
	"slices"
)

// Summary is the spread of a set of figures.
type Summary struct {
	Min, Median, Max float64
	N                int // how many figures
}

// Summarize returns the Summary of xs; the zero Summary if xs is empty. The
// median of an even count is the mean of the middle two.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Summary{Min: s[0], Median: m, Max: s[len(s)-1], N: len(s)}
}

// Median is Summarize(xs).Median.
func Median(xs []float64) float64 { return Summarize(xs).Median }

// Ratios prints s as ratios: "0.92 / 1.17 / 1.28" (min / median / max).
func (s Summary) Ratios() string {
	return fmt.Sprintf("%.2f / %.2f / %.2f", s.Min, s.Median, s.Max)
}

// Rates prints s as rates: "9.06M / 11.9M / 13.1M" (min / median / max).
func (s Summary) Rates() string {
	return Rate(s.Min) + " / " + Rate(s.Median) + " / " + Rate(s.Max)
}

// Rate prints a rate (items or rows per second) in thousands or millions:
// 950, 409.4k, 2.05M.
func Rate(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

// MiB prints a size in bytes in whole mebibytes: "143 MiB".
func MiB(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// Met prints whether a target is met: "yes", or a bold "**no**" that
// stands out in a table.
func Met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
