package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// httpServer serves the JSON API. Handlers read figures from the running
// components; none of them blocks processing.
type httpServer struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

func newHTTPServer(listen string, h http.Handler, log *slog.Logger) (*httpServer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	return &httpServer{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		ln:  ln, log: log,
	}, nil
}

func (s *httpServer) Addr() string { return s.ln.Addr().String() }

func (s *httpServer) serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// close stops serving: it waits up to 5 s for requests in flight, then
// closes the listener (also when serve never ran). It is idempotent.
func (s *httpServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = s.ln.Close()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
