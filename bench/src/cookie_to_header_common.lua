-- kasi's job in plain Lua, written the way it usually is: the base64 decoder is the bit-string
-- one that a search for "lua base64 decode" turns up first (each character becomes a string of
-- six '0'/'1' characters, the whole string is then cut into groups of eight), the cookie found
-- with a pattern, the protobuf's first field taken by its length byte. Same job as
-- cookie_to_header.lua (strip a client-sent routing header, route by the session cookie's
-- address), same lack of CIDR or port checks, expiry and dead-pod memory.

local ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

local function base64_decode(data)
  data = string.gsub(data, '[^' .. ALPHABET .. '=]', '')
  return (data:gsub('.', function(char)
    if char == '=' then
      return ''
    end
    local bits, value = '', (ALPHABET:find(char, 1, true) - 1)
    for i = 6, 1, -1 do
      bits = bits .. (value % 2 ^ i - value % 2 ^ (i - 1) > 0 and '1' or '0')
    end
    return bits
  end):gsub('%d%d%d?%d?%d?%d?%d?%d?', function(byte)
    if #byte ~= 8 then
      return ''
    end
    local code = 0
    for i = 1, 8 do
      code = code + (byte:sub(i, i) == '1' and 2 ^ (8 - i) or 0)
    end
    return string.char(code)
  end))
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  headers:remove("x-envoy-original-dst-host")
  local cookie = headers:get("cookie")
  if cookie == nil then
    return
  end
  local value = cookie:match('kasi%-session="?([^;"]+)')
  if value == nil then
    return
  end
  local decoded = base64_decode(value)
  local address = decoded
  -- Envoy >= 1.27 writes a protobuf: field 1 (tag 0x0a), one length byte, the address.
  if decoded:byte(1) == 0x0a then
    address = decoded:sub(3, 2 + decoded:byte(2))
  end
  if address:match("^[%d.]+:%d+$") then
    headers:replace("x-envoy-original-dst-host", address)
  end
end
