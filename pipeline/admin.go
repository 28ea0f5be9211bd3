package pipeline

// This file holds the admin HTTP endpoint: /stats, /metrics, /healthz,
// /readyz, scaling, and its server's life.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stats"
)

// adminServer is the admin HTTP endpoint: GET / (the dashboard), /history,
// /stats, /metrics, /healthz and /readyz. It owns its serving goroutine and tracks every connection
// so that stop returns only once all of them are gone.
type adminServer struct {
	srv   *http.Server
	addr  string
	done  chan error     // Serve's result
	conns sync.WaitGroup // one per open connection

	hist        history       // the dashboard's last minutes
	stopSampler chan struct{} // closed by stop
	sampler     sync.WaitGroup
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
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		return fmt.Errorf("admin listen %q: %w", a.Listen, err)
	}
	if a.Token != "" || !offLoopback(a.Listen) {
		return nil
	}
	return fmt.Errorf("admin listen %q: not a loopback address; bind 127.0.0.1 or ::1, or set admin.token so that every request must carry it", a.Listen)
}

// offLoopback reports whether an admin address listens beyond loopback
// (as checkAdminAddr counts: an empty host and 0.0.0.0 do).
func offLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	return err == nil && !isLoopback(host)
}

// loopbackHost serves, for an endpoint without a token, only requests
// whose Host names a loopback address or localhost. A web page whose name
// DNS rebinding points at 127.0.0.1 is same-origin with the endpoint: it
// could read /stats and resize stages, where a client on this machine
// names the address it dialled. A request without a Host (HTTP/1.0) is no
// browser's.
func loopbackHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host != "" && !isLoopback(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")) {
			http.Error(w, fmt.Sprintf("Host %q: without admin.token this endpoint answers requests for 127.0.0.1, [::1] or localhost only", r.Host),
				http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
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

// adminMaxConns is how many connections the admin endpoint holds at once;
// more wait to be accepted until one closes. Without a bound, clients
// that open connections and sit idle could take every file descriptor of
// the process, and with them its intake and its database connections.
// pipectl top, a dashboard and a scraper take one each.
const adminMaxConns = 64

func startAdmin(p *Pipeline) (*adminServer, error) {
	if err := checkAdminAddr(p.admin); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	// Every pipeline metric carries the pipeline's name, so that several
	// pipelines scraped into one Prometheus stay apart.
	labelled := prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": p.name}, reg)
	for _, r := range []struct {
		reg prometheus.Registerer
		c   prometheus.Collector
	}{
		{reg, collectors.NewGoCollector()},
		{reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
		{labelled, newCollector(p)},
	} {
		if err := r.reg.Register(r.c); err != nil {
			return nil, fmt.Errorf("admin: metrics: %w", err)
		}
	}
	ln, err := net.Listen("tcp", p.admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	ln = netutil.LimitListener(ln, adminMaxConns)
	a := &adminServer{addr: ln.Addr().String(), done: make(chan error, 1), stopSampler: make(chan struct{})}
	log := p.log.Named("admin")
	mux := p.adminMux(reg, log)
	p.dashboardHandlers(mux, &a.hist, log)
	a.srv = &http.Server{
		Handler:           requireToken(p.admin.Token, mux),
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
	a.sampler.Go(func() { sampleEvery(p, &a.hist, historyInterval, a.stopSampler) })
	go func() { a.done <- a.srv.Serve(ln) }()
	log.Info("admin endpoint listening", zap.String("addr", a.addr), zap.Bool("token", p.admin.Token != ""))
	if offLoopback(p.admin.Listen) {
		// Allowed with a token (checkAdminAddr), but said: the endpoint
		// speaks plain HTTP.
		log.Warn("admin endpoint listens off loopback over plain HTTP: its token and figures cross the network unencrypted; "+
			"put a TLS-terminating proxy in front of it, or listen on loopback", zap.String("addr", a.addr))
	}
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
	mux.HandleFunc("POST /stages/{name}/scale", p.serveScale)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if why := p.notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, stateRunning.String())
	})
	return mux
}

// tokenCookie is the cookie a browser gets from POST /login, so that the
// dashboard (which a browser opens without an Authorization header) follows
// the token rule too. Its value is derived from the token, not the token.
const tokenCookie = "pipeline_admin"

// requireToken passes requests that carry "Authorization: Bearer token",
// or the cookie POST /login sets for a form that gave the token; with an
// empty token it passes every request. Comparisons are of hashes, in
// constant time, so that neither the token nor its length leaks through
// timing. A browser asking for the dashboard without either gets a form
// for the token.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return loopbackHost(next)
	}
	wantHeader := sha256.Sum256([]byte("Bearer " + token))
	cookie := sha256.Sum256([]byte("pipeline admin cookie\x00" + token))
	cookieValue := hex.EncodeToString(cookie[:])
	equal := func(got string, want []byte) bool {
		h := sha256.Sum256([]byte(got))
		w := sha256.Sum256(want)
		return subtle.ConstantTimeCompare(h[:], w[:]) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], wantHeader[:]) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(tokenCookie); err == nil && equal(c.Value, []byte(cookieValue)) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == "/login" {
			r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
			if equal(r.PostFormValue("token"), []byte(token)) {
				http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: cookieValue, Path: "/",
					HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
				http.Redirect(w, r, "/", http.StatusSeeOther)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="pipeline admin"`)
		// A refused client's connection is not kept alive: it would hold
		// one of the endpoint's adminMaxConns for IdleTimeout.
		w.Header().Set("Connection", "close")
		if r.URL.Path == "/" || r.URL.Path == "/login" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, loginPage)
			return
		}
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	})
}

// loginPage asks a browser for the admin token; POST /login checks it.
const loginPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pipeline admin: token</title></head>
<body style="font-family: system-ui, sans-serif; margin: 3em">
<h1 style="font-weight: 500; font-size: 20px">This admin endpoint needs its token</h1>
<p>Give the pipeline's <code>admin.token</code>; the browser keeps a cookie for this endpoint.
Programs send <code>Authorization: Bearer TOKEN</code> instead.</p>
<form method="post" action="/login">
<input type="password" name="token" autocomplete="current-password" autofocus size="40">
<button type="submit">Open the dashboard</button>
</form></body></html>
`

// stop shuts the server down: it stops accepting, lets requests in
// progress finish for up to adminShutdownWait, closes what is left and
// returns once the serving goroutine and every connection are gone.
func (a *adminServer) stop() error {
	close(a.stopSampler)
	a.sampler.Wait()
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

// maxScaleBody bounds a scale request: three small numbers.
const maxScaleBody = 4 << 10

// serveScale is POST /stages/{name}/scale: a JSON Scale in, the stage's
// figures out. Only application/json is taken, which a browser cannot
// send to another origin without asking first (a preflight this endpoint
// never grants), so a web page cannot resize a pipeline on loopback.
func (p *Pipeline) serveScale(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "send the request as application/json: {\"workers\": 8, \"batch\": \"auto\"}", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxScaleBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading the request: %v", err), http.StatusRequestEntityTooLarge)
		return
	}
	sc, err := decodeScale(body)
	if err == nil {
		var st stats.Stage
		if st, err = p.Scale(r.PathValue("name"), sc); err == nil {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(st)
			return
		}
	}
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrUnknownStage):
		code = http.StatusNotFound
	case errors.Is(err, ErrBadScale):
		code = http.StatusBadRequest
	case errors.Is(err, engine.ErrNotResizable), errors.Is(err, engine.ErrStopping), errors.Is(err, ErrRemoteStage):
		code = http.StatusConflict
	}
	http.Error(w, err.Error(), code)
}
