module github.com/stagedserver/seda

go 1.26.8
