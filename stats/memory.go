package stats

// This file holds the figures of the pipeline's memory limit: the bytes
// of records it holds against it.

// Memory is the pipeline's memory_limit as /stats shows it (json
// "memory"): the bytes of the records the pipeline holds (queued, in
// batches, in buffers its events keep) against the limit, and what the
// sources' doors did past it.
type Memory struct {
	LimitBytes int64 `json:"limit_bytes"`
	HeldBytes  int64 `json:"held_bytes"`
	// Basis says where the limit comes from: "memory_limit" (the
	// pipeline file), or what its default is a fraction of: "cgroup"
	// (memory.max), "GOMEMLIMIT", "physical memory" or "assumed" (none
	// of them could be read).
	Basis string `json:"basis"`
	// Overflow is what the doors do past the limit: "reject" (refuse
	// records busy) or "block" (stop reading).
	Overflow string `json:"overflow"`
	Refused  uint64 `json:"refused"` // records refused at the doors past the limit
	Waits    uint64 `json:"waits"`   // reads a door held back past the limit (block; natsq's consumer under either)
	// GoLimitBytes is the Go runtime's memory limit (GOMEMLIMIT, or the
	// one pipectl run set to match the limit); 0 when there is none.
	GoLimitBytes int64 `json:"go_limit_bytes,omitempty"`
}
