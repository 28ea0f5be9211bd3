//go:build !race

package pipeline

const rtRace = false
