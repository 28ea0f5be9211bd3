package pipeline

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns a zap logger writing to standard error as lc says:
// Format "console" (the default) or "json", Level "debug", "info" (the
// default), "warn" or "error".
func NewLogger(lc LogConfig) (*zap.Logger, error) {
	level := zapcore.InfoLevel
	if lc.Level != "" {
		l, err := zapcore.ParseLevel(lc.Level)
		if err != nil {
			return nil, fmt.Errorf("log level %q: want debug, info, warn or error", lc.Level)
		}
		level = l
	}
	var enc zapcore.Encoder
	switch lc.Format {
	case "", "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, fmt.Errorf("log format %q: want console or json", lc.Format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}
