-- kasi's job in plain Lua (envoy.filters.http.lua): the alternative a user would write, and
-- write well. The session cookie stateful_session writes is `kasi-session="<base64>"`, the
-- bytes a protobuf whose field 1 is the address "ip:port" (Envoy >= 1.27) or, before 1.27,
-- the address itself. Table-driven base64 (standard or URL-safe alphabet), no per-bit strings.
-- It strips a client-sent routing header as kasi does; it has no CIDR or port allow-list, no
-- expiry and no dead-pod memory.

local COOKIE = "kasi-session"
local HEADER = "x-envoy-original-dst-host"

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local VALUE = {}
for i = 1, #ALPHABET do
  VALUE[ALPHABET:byte(i)] = i - 1
end
VALUE[("-"):byte()] = 62
VALUE[("_"):byte()] = 63

local function base64_decode(text)
  local bytes, acc, bits = {}, 0, 0
  for i = 1, #text do
    local v = VALUE[text:byte(i)]
    if v == nil then
      break -- padding
    end
    acc = acc * 64 + v
    bits = bits + 6
    if bits >= 8 then
      bits = bits - 8
      local shift = 2 ^ bits
      local byte = math.floor(acc / shift)
      bytes[#bytes + 1] = byte
      acc = acc - byte * shift
    end
  end
  return bytes
end

-- The address in the cookie's bytes: protobuf field 1 (tag 0x0a, one-byte length), else the
-- bytes themselves.
local function address_of(bytes)
  if bytes[1] == 0x0a and bytes[2] ~= nil and bytes[2] < 128 and #bytes >= 2 + bytes[2] then
    return string.char(unpack(bytes, 3, 2 + bytes[2]))
  end
  return string.char(unpack(bytes))
end

local PATTERN = COOKIE:gsub("%-", "%%-") .. '="?([%w+/=_-]+)'

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  headers:remove(HEADER)
  local cookie = headers:get("cookie")
  if cookie == nil then
    return
  end
  local value = cookie:match(PATTERN)
  if value == nil then
    return
  end
  local address = address_of(base64_decode(value))
  if address:match("^[%d.]+:%d+$") or address:match("^%[[%x:.]+%]:%d+$") then
    headers:replace(HEADER, address)
  end
end
