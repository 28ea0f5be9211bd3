// Package report holds what the benchmarks' sections of bench/RESULTS.md
// share: the spread of repeated figures (min / median / max), rates and
// sizes written for people, and the yes / **no** of a target.
package report
