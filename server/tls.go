package server

import (
	"crypto/tls"
	"fmt"

	"github.com/headwater-live/headwater/auth"
)

// loadTLS loads the certificate of a listener (section names it in
// errors: "rtmp", "admin"); nil when cert and key are "". The origin loads
// its own, from origin.Config.
func loadTLS(section, cert, key string) (*tls.Config, error) {
	if cert == "" && key == "" {
		return nil, nil
	}
	certFile, err := auth.ReadSecretFile(cert)
	if err != nil {
		return nil, fmt.Errorf("%s: load TLS key pair: %w", section, err)
	}
	keyFile, err := auth.ReadSecretFile(key)
	if err != nil {
		return nil, fmt.Errorf("%s: load TLS key pair: %w", section, err)
	}
	pair, err := tls.X509KeyPair(certFile.Content, keyFile.Content)
	if err != nil {
		return nil, fmt.Errorf("%s: load TLS key pair: %w", section, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}
