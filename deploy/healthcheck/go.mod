module github.com/launchready/launchready/deploy/healthcheck

go 1.26.0
