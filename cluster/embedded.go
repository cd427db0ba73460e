package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts the in-process JetStream server of cfg.Embedded.
func (n *Node) startEmbedded(ctx context.Context) error {
	c := n.cfg
	dir := c.StoreDir
	if dir == "" {
		d, err := os.MkdirTemp("", "headwater-nats-")
		if err != nil {
			return fmt.Errorf("cluster: embedded store: %w", err)
		}
		dir, n.tempDir = d, d
	}
	opts := &server.Options{
		ServerName: c.NodeID,
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: EmbeddedMaxPayload,
		NoSigs:     true,
		DontListen: c.Listen == "" && c.RouteListen == "",
	}
	if c.Listen == "" && c.RouteListen != "" {
		// Routing waits for a client listener: a loopback one on a random port.
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	}
	if c.Listen != "" {
		host, port, err := hostPort(c.Listen)
		if err != nil {
			return fmt.Errorf("cluster: listen %q: %w", c.Listen, err)
		}
		opts.Host, opts.Port = host, port
	}
	if c.RouteListen != "" {
		host, port, err := hostPort(c.RouteListen)
		if err != nil {
			return fmt.Errorf("cluster: route listen %q: %w", c.RouteListen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: c.ClusterName, Host: host, Port: port}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return fmt.Errorf("cluster: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("cluster: embedded server: %w", err)
	}
	ns.SetLoggerV2(serverLogger{n.log.With("nats", "server")}, false, false, false)
	ns.Start()
	wait := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("cluster: embedded server not ready for connections within %s", wait.Round(time.Millisecond))
	}
	n.embedded = ns
	n.log.Info("embedded nats started", "listen", c.Listen, "route_listen", c.RouteListen, "store_dir", dir)
	return nil
}

// hostPort splits a listen address; port 0 becomes the server's random
// port (-1: NATS reads 0 as its default port).
func hostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// shutdownEmbedded stops the embedded server, if any, and waits for it.
func (n *Node) shutdownEmbedded() {
	if n.embedded == nil {
		return
	}
	n.embedded.Shutdown()
	n.embedded.WaitForShutdown()
}

// removeTemp removes the store directory Start made.
func (n *Node) removeTemp() error {
	if n.tempDir == "" {
		return nil
	}
	if err := os.RemoveAll(n.tempDir); err != nil {
		return fmt.Errorf("cluster: remove embedded store: %w", err)
	}
	return nil
}

// serverLogger logs the embedded server's notices, warnings and errors to
// slog (debug and trace are off).
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
