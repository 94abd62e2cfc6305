-- wrk script: GET /recommendations for users drawn uniformly from 1..USERS (the old users of
-- the synthetic set written by `cargo run --release -p musicrec-service --example artifact_set`),
-- every fifth one a new user (no offline list: the popular path).
-- wrk -t1 -c64 -d20s -s crates/service/bench/recommendations.lua http://127.0.0.1:8080
local users = tonumber(os.getenv("USERS") or "1000000")
math.randomseed(7)
request = function()
  local user = math.random(1, users)
  if math.random(1, 5) == 1 then user = users + user end
  return wrk.format("GET", "/recommendations?user_id=" .. user .. "&k=10")
end
