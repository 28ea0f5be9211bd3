//go:build race

package stage

// raceBuild: under the race detector sync.Pool drops a share of what is
// put into it on purpose, so allocation counts that rely on a pool do not
// hold.
const raceBuild = true
