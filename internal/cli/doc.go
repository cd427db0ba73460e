// Package cli is Headwater's command line: the cobra commands of the
// headwater binary (serve, config, version, auth, token, transcoder), built
// by NewRootCommand. The binary's main package only calls it.
package cli
