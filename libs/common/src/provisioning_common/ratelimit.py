"""One Redis-backed rate limiter for both services.

Algorithm: sliding-window counter. Two fixed-window counters (current and
previous) weighted by the overlap give a smooth limit with O(1) memory per key
and one round trip (a Lua script, atomic on the server), unlike a sliding log
whose sorted set grows with every request. Counts are shared by every replica."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1] current window key, KEYS[2] previous window key
# ARGV[1] limit, ARGV[2] window seconds, ARGV[3] elapsed fraction of current window
_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local limit = tonumber(ARGV[1])
local weight = 1 - tonumber(ARGV[3])
local estimated = prev * weight + cur
if estimated >= limit then
  return {0, math.floor(estimated)}
end
cur = redis.call('INCR', KEYS[1])
if cur == 1 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
end
return {1, math.floor(prev * weight + cur)}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the current window ends
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter:
    def __init__(self, redis: Redis, *, prefix: str = "rl") -> None:
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(_SCRIPT)

    async def hit(self, tier: str, subject: str, limit: int, window: int) -> RateDecision:
        now = time.time()
        window_start = int(now // window) * window
        elapsed = (now - window_start) / window
        cur_key = f"{self.prefix}:{tier}:{subject}:{window_start}"
        prev_key = f"{self.prefix}:{tier}:{subject}:{window_start - window}"
        allowed, count = await self._script(
            keys=[cur_key, prev_key], args=[limit, window, f"{elapsed:.6f}"]
        )
        reset_at = window_start + window
        remaining = max(0, limit - int(count))
        retry_after = 0 if allowed else max(1, math.ceil(reset_at - now))
        return RateDecision(bool(allowed), limit, remaining, reset_at, retry_after)
