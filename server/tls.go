package server

import (
	"crypto/tls"
	"fmt"
)

// loadTLS loads the certificate of a listener (section names it in
// errors: "rtmp", "admin"); nil when cert and key are "". The origin loads
// its own, from origin.Config.
func loadTLS(section, cert, key string) (*tls.Config, error) {
	if cert == "" && key == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s: load TLS key pair: %w", section, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}
