// Package plot draws the benchmarks' pictures: panels of line series over
// a shared time axis, as a self-contained SVG (no fonts, scripts or
// anything from elsewhere), so that a benchmark command can write the
// picture RESULTS.md shows.
package plot
