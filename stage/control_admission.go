package stage

// AdmissionStats are a source's admission control as /stats shows it.
type AdmissionStats struct {
	TargetMs float64 `json:"target_ms"` // the p99 latency target, read to finish
	P99Ms    float64 `json:"p99_ms"`    // the p99 the controller saw last
	Rate     float64 `json:"rate"`      // records admitted per second at most; 0: not limiting
	Admitted uint64  `json:"admitted"`  // records let in
	Shed     uint64  `json:"shed"`      // records refused busy at the door
}
