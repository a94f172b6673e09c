# One small Node addon: the page-cache advice Node's fs module does not offer
# (see page_cache.c and src/sftp/page-cache.ts). Built by `npm install` (package.json "install").
{
  "targets": [
    {
      "target_name": "page_cache",
      "sources": ["page_cache.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
