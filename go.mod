module github.com/headwater-live/headwater

go 1.26.8

require (
	github.com/Eyevinn/mp4ff v0.51.0 // indirect
	github.com/abema/go-mp4 v1.5.0 // indirect
	github.com/asticode/go-astikit v0.30.0 // indirect
	github.com/asticode/go-astits v1.15.0 // indirect
	github.com/bluenviron/gohlslib/v2 v2.3.0 // indirect
	github.com/bluenviron/mediacommon/v2 v2.8.3 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/yapingcat/gomedia v0.0.0-20240906162731-17feea57090c // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
