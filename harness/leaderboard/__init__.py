"""Result files on disk -> leaderboard tables and plots. Never imports torch."""
