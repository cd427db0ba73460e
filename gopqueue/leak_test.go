package gopqueue

import "runtime"

func runtimeGoroutines() int { return runtime.NumGoroutine() }
