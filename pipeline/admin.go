package pipeline

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// adminServer is the admin HTTP endpoint: GET /stats, /metrics, /healthz
// and /readyz. It owns its serving goroutine and tracks every connection
// so that stop returns only once all of them are gone.
type adminServer struct {
	srv   *http.Server
	addr  string
	done  chan error     // Serve's result
	conns sync.WaitGroup // one per open connection
}

// adminShutdownWait bounds how long stop waits for requests in progress
// before it closes their connections.
const adminShutdownWait = 2 * time.Second

// checkAdminAddr refuses an admin address that is not loopback unless a
// token guards it: /stats and /metrics describe the deployment, and the
// endpoint must not be open to the network by accident. An empty host
// (":9464") and the unspecified addresses (0.0.0.0, ::) listen on every
// interface, so they count as non-loopback.
func checkAdminAddr(a AdminConfig) error {
	if a.Listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return fmt.Errorf("admin listen %q: %w", a.Listen, err)
	}
	if a.Token != "" || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("admin listen %q: not a loopback address; bind 127.0.0.1 or ::1, or set admin.token so that every request must carry it", a.Listen)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i] // IPv6 zone
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func startAdmin(p *Pipeline) (*adminServer, error) {
	if err := checkAdminAddr(p.admin); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(p),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: metrics: %w", err)
		}
	}
	ln, err := net.Listen("tcp", p.admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	a := &adminServer{addr: ln.Addr().String(), done: make(chan error, 1)}
	log := p.log.Named("admin")
	a.srv = &http.Server{
		Handler:           requireToken(p.admin.Token, p.adminMux(reg, log)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(log),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				a.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				a.conns.Done()
			}
		},
	}
	go func() { a.done <- a.srv.Serve(ln) }()
	log.Info("admin endpoint listening", zap.String("addr", a.addr), zap.Bool("token", p.admin.Token != ""))
	return a, nil
}

func (p *Pipeline) adminMux(reg *prometheus.Registry, log *zap.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(p.Stats()); err != nil {
			log.Debug("writing /stats", zap.Error(err))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(log),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := p.currentState()
		if st != stateRunning {
			http.Error(w, st.String(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, st.String())
	})
	return mux
}

// requireToken passes requests that carry "Authorization: Bearer token";
// with an empty token it passes every request. The comparison is of
// hashes, in constant time, so that neither the token nor its length
// leaks through timing.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pipeline admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// stop shuts the server down: it stops accepting, lets requests in
// progress finish for up to adminShutdownWait, closes what is left and
// returns once the serving goroutine and every connection are gone.
func (a *adminServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), adminShutdownWait)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if err != nil {
		err = a.srv.Close()
	}
	if serr := <-a.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	// Serve has returned, so no connection can be added any more.
	a.conns.Wait()
	return err
}

// AdminAddr returns the address the admin endpoint is bound to (the
// configuration may ask for port 0), or "" when there is none or the
// pipeline has not started.
func (p *Pipeline) AdminAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.adm == nil {
		return ""
	}
	return p.adm.addr
}
