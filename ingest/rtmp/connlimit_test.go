package rtmp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
)

func TestConnectionRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxConnectionsPerMinute: 2})
	for range 2 {
		c := dialRaw(t, e.addr())
		c.connect("live")
	}
	c, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("third connection read %d bytes", n)
	}
	e.waitErrors(ingest.ReasonTooManyPublishers, 1)
}

// selfSigned returns a TLS configuration with a fresh self-signed
// certificate for 127.0.0.1.
func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "headwater test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

func TestRTMPSFFmpeg(t *testing.T) {
	needFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{TLSAddress: "127.0.0.1:0", TLSConfig: selfSigned(t)})
	url := "rtmps://" + e.srv.TLSAddr().String() + "/live/secure"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append(testsrcArgs("2"), "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
		"-c:a", "aac", "-f", "flv", url)
	if out, err := ffmpeg(ctx, append([]string{"-re"}, args...)...); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	c := e.waitPublished("live/secure", 1, time.Second)
	c.wait(t, 5*time.Second)
	checkPublish(t, c, 2, false)

	// Plain RTMP on the RTMPS port fails at the TLS handshake.
	out, err := ffmpeg(ctx, append(testsrcArgs("1"), "-c:v", "libx264", "-c:a", "aac", "-f", "flv",
		strings.Replace(url, "rtmps://", "rtmp://", 1))...)
	if err == nil {
		t.Fatalf("plain RTMP on the RTMPS port published:\n%s", out)
	}
}
