# rosterd's Node addon (see addon.c): page-cache advice and off-loop spool writes, which Node's own
# modules do not offer. Built by `npm install` (package.json "install"); optional: rosterd runs
# without it. OpenSSL's headers come with Node's, and its symbols from the Node binary itself.
{
  "targets": [
    {
      "target_name": "rosterd",
      "sources": ["addon.c", "page_cache.c", "spool_write.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      # Every symbol resolved at load: a Node without OpenSSL's symbols fails require() (and
      # rosterd runs without the addon) instead of the first upload ending the process.
      "ldflags": ["-Wl,-z,now"]
    }
  ]
}
