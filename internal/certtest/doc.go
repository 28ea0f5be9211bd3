// Package certtest makes throwaway X.509 certificates for TLS tests: a
// CA, a server certificate for 127.0.0.1 and localhost, and client
// certificates, written as PEM files that real tools (openssl s_client,
// curl, rsyslog's gtls driver) read as well as Go does.
//
//	ca := certtest.NewCA(t, t.TempDir(), "test")
//	srv := ca.Server(t, "server") // srv.CertFile, srv.KeyFile
//	cli := ca.Client(t, "client") // cli.TLS for a Go client
package certtest
