//go:build !race

package stage

const raceBuild = false
