// Command crossvet type-checks and vets packages from source, for the
// operating system GOOS names, without compiling them. make test runs it
// for windows and darwin (scripts/crossbuild.sh), so that code for other
// systems stays behind build tags with a fallback.
//
// It runs go vet's analyzers (the same suite) through
// golang.org/x/tools/go/analysis/multichecker, which loads every package
// and its dependencies from source with go/packages: a type error or a
// vet finding in any file the GOOS selects, tests included, fails it. On
// a cold build cache, `GOOS=windows go vet ./...` compiles every
// dependency for Windows first (nats-server, pgx, chromedp's protocol:
// minutes of CPU on two cores); type-checking the same source takes
// seconds.
//
//	go build -o /tmp/crossvet ./internal/cmd/crossvet
//	GOOS=windows CGO_ENABLED=0 /tmp/crossvet ./...
//
// Build it for the machine it runs on (GOOS unset), and set GOOS only when
// running it. The exit status is 0 when clean, 1 on errors (a package
// that does not type-check) and 3 on findings.
package main
