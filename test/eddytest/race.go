//go:build race

package eddytest

// raceBuild: this test binary was built with -race, so eddy is too.
const raceBuild = true
