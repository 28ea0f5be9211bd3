package b8

// This file finds the README's syslog pipeline, the one B8 runs, with
// its source's listen address replaced.

import (
	"errors"
	"fmt"
	"regexp"
)

var (
	readmeBlock = regexp.MustCompile("(?s)<!-- syslog:begin -->\\s*```yaml\\n(.*?)```\\s*<!-- syslog:end -->")
	// The source's listen key: the only block-style listen: line (the
	// admin endpoint's is inside a flow mapping).
	listenLine = regexp.MustCompile(`(?m)^(\s+listen:\s*)(\S+)`)
)

// ReadmePipeline returns the syslog pipeline of README.md (between its
// syslog:begin and syslog:end markers), with the source's listen address
// replaced by listen.
func ReadmePipeline(readme []byte, listen string) (string, error) {
	m := readmeBlock.FindSubmatch(readme)
	if m == nil {
		return "", errors.New("b8: README.md has no ```yaml block between <!-- syslog:begin --> and <!-- syslog:end -->")
	}
	y := string(m[1])
	if n := len(listenLine.FindAllStringIndex(y, -1)); n != 1 {
		return "", fmt.Errorf("b8: the README's syslog pipeline has %d block-style listen: lines, want 1 (the source's)", n)
	}
	return listenLine.ReplaceAllString(y, "${1}"+listen), nil
}
