module kindprobe

go 1.22
