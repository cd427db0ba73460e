//go:build ignore

// genlatm captures the RTP packets of ffmpeg's MP4A-LATM packetizer
// (-rtpflags latm) for the LATM fuzz seeds: it listens on UDP, has ffmpeg
// send 8 AAC frames (48 kHz stereo) there, and writes the SDP to
// <name>.sdp and the packets to <name>, each as a 2-byte big-endian length
// and the RTP packet.
//
//	go run genlatm.go NAME PKT_SIZE
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run genlatm.go NAME PKT_SIZE")
		os.Exit(2)
	}
	name, pktSize := os.Args[1], os.Args[2]
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-frames:a", "8", "-ac", "2",
		"-c:a", "aac", "-b:a", "96k", "-rtpflags", "latm", "-sdp_file", name+".sdp",
		"-f", "rtp", fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=%s", port, pktSize))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	var out []byte
	buf := make([]byte, 65536)
	for {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			break
		}
		out = binary.BigEndian.AppendUint16(out, uint16(n))
		out = append(out, buf[:n]...)
	}
	if err := cmd.Wait(); err != nil {
		panic(err)
	}
	if err := os.WriteFile(name, out, 0o644); err != nil {
		panic(err)
	}
}
