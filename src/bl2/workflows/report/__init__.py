"""`bl2 report`: what it reads (`inputs`), draws (`figures`) and writes (`build`)."""
