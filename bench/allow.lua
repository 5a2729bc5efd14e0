-- wrk script: POST /v1/actions on the allow path, each request a distinct action (digest).
-- Counts non-201 answers so a run that "succeeds" on errors is visible.
local counter = 0
local bad = 0

request = function()
  counter = counter + 1
  local body = string.format(
    '{"action":"logs.read","resource":"app://web/%d","environment":"production","params":{"lines":200,"since":"1h"},"justification":"load test"}',
    counter)
  return wrk.format("POST", "/v1/actions", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer demo-agent-token",
  }, body)
end

response = function(status, headers, body)
  if status ~= 201 then bad = bad + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("non-201 responses: %d\n", bad))
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("latency p%s: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
