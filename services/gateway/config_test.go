package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfigRedis(t *testing.T) {
	c, err := loadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisAddr != "" || c.RedisPassword != "" || c.RedisTimeout != 300*time.Millisecond ||
		c.RedisRetryInterval != time.Second || c.dedupMode() != "memory" {
		t.Fatalf("redis defaults %+v mode %s", c, c.dedupMode())
	}

	c, err = loadConfig(env(map[string]string{"REDIS_ADDR": " redis.infra.svc:6380 ", "REDIS_PASSWORD": "s3cret",
		"REDIS_TIMEOUT": "50ms", "REDIS_RETRY_INTERVAL": "5s"}))
	if err != nil || c.RedisAddr != "redis.infra.svc:6380" || c.RedisPassword != "s3cret" ||
		c.RedisTimeout != 50*time.Millisecond || c.RedisRetryInterval != 5*time.Second || c.dedupMode() != "redis" {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := loadConfig(env(map[string]string{"REDIS_ADDR": "[::1]:6379"})); err != nil || c.RedisAddr != "[::1]:6379" {
		t.Fatalf("IPv6 address: %+v %v", c, err)
	}

	for _, bad := range []map[string]string{
		{"REDIS_ADDR": "redis"},              // no port
		{"REDIS_ADDR": ":6379"},              // no host
		{"REDIS_ADDR": "redis:"},             // empty port
		{"REDIS_ADDR": "redis:http"},         // named port
		{"REDIS_ADDR": "redis:0"},            // out of range
		{"REDIS_ADDR": "redis:65536"},        // out of range
		{"REDIS_ADDR": "redis://redis:6379"}, // a URL is not host:port
		{"REDIS_ADDR": "user@redis:6379"},    // nor are credentials
		{"REDIS_ADDR": "redis/0:6379"},
		{"REDIS_TIMEOUT": "soon"}, {"REDIS_TIMEOUT": "0s"}, {"REDIS_TIMEOUT": "-1s"},
		{"REDIS_RETRY_INTERVAL": "1"}, {"REDIS_RETRY_INTERVAL": "0s"},
	} {
		_, err := loadConfig(env(bad))
		if err == nil {
			t.Errorf("accepted %v", bad)
			continue
		}
		for k := range bad {
			if !strings.Contains(err.Error(), k+"=") {
				t.Errorf("%v: error %q does not name %s", bad, err, k)
			}
		}
	}
}
