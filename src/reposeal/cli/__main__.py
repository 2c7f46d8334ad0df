from reposeal.cli import run

run()
