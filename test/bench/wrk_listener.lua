-- wrk script (test/bench/wrk_listener.lua, figure 8): POSTs distinct pre-signed note
-- deliveries to the webhook listener, each thread its own share of them, each once.
--   wrk -t T -c C -d S -s wrk_listener.lua http://127.0.0.1:PORT -- FILE KEY T
-- FILE (written by bench.py): per delivery a line with the number of headers, that many
-- "Name: value" lines, a line with the body's length, the body and a newline.
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
end

function init(args)
   local f = assert(io.open(args[1], "rb"))
   local data = f:read("*a")
   f:close()
   local path = "/halo/" .. args[2]
   local nthreads = tonumber(args[3])
   local pos, idx = 1, 0
   reqs, nreq, served = {}, 0, 0
   while pos <= #data do
      local nl = data:find("\n", pos, true)
      local nh = tonumber(data:sub(pos, nl - 1))
      pos = nl + 1
      local headers = {}
      for _ = 1, nh do
         nl = data:find("\n", pos, true)
         local line = data:sub(pos, nl - 1)
         local colon = line:find(": ", 1, true)
         headers[line:sub(1, colon - 1)] = line:sub(colon + 2)
         pos = nl + 1
      end
      nl = data:find("\n", pos, true)
      local len = tonumber(data:sub(pos, nl - 1))
      local body = data:sub(nl + 1, nl + len)
      pos = nl + len + 2
      if idx % nthreads == tid then
         nreq = nreq + 1
         reqs[nreq] = wrk.format("POST", path, headers, body)
      end
      idx = idx + 1
   end
end

function request()
   served = served + 1
   -- past the end: the last one again (a duplicate; bench.py checks that none was needed)
   return reqs[math.min(served, nreq)]
end
