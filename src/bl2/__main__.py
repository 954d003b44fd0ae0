from bl2.cli import app

app()
