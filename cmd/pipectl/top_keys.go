package main

// This file holds which keys quit pipectl top, shared by both readKeys.

// quitKey reports whether keys hold one that quits top: q, Q, Ctrl-C or
// Ctrl-D.
func quitKey(keys []byte) bool {
	for _, c := range keys {
		switch c {
		case 'q', 'Q', 3, 4:
			return true
		}
	}
	return false
}
