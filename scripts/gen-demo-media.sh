#!/usr/bin/env bash
# gen-demo-media.sh [OUTDIR] — make the demo player's videos, offline, with Debian's ffmpeg.
# OUTDIR defaults to demo/media (git-ignored; api serves it at /demo/media/). For each title in
# the table below it writes OUTDIR/<id>.mp4 (640x360 H.264, no audio track so autoplay is never
# blocked, a big running clock drawn from the frame's own timestamp, keyframe every 2 s so seeks
# land quickly) and OUTDIR/<id>.jpg (a 320x180 thumbnail), then OUTDIR/catalog.json, which the
# player reads to list the titles. Idempotent: files already present are kept; each file is
# written under a temporary name and renamed, so an interrupted run never leaves half a video.
# Needs: ffmpeg, fonts-dejavu-core. Takes ~8 s on 2 cores the first time, ~0 s after.
set -euo pipefail
out=$(realpath -m "${1:-$(dirname "$0")/../demo/media}")
font_dir=/usr/share/fonts/truetype/dejavu
bold=$font_dir/DejaVuSans-Bold.ttf
regular=$font_dir/DejaVuSans.ttf

die() { echo "${0##*/}: $*" >&2; exit 1; }
command -v ffmpeg >/dev/null || die "ffmpeg not found (apt-get install ffmpeg)"
[[ -r $bold && -r $regular ]] || die "DejaVu fonts not found in $font_dir (apt-get install fonts-dejavu-core)"
mkdir -p "$out"

# id | title | seconds | background | text colour | series | next episode — ids follow the event id
# rules [A-Za-z0-9._:@-]. The three short titles are episodes of one series, so the row shows one
# card for them and, once one is finished, "next up" (the player sends series_id/next_video_id).
titles=(
    "clock|The Big Clock|90|0x1d3557|white||"
    "sunset|Sunset Run|30|0x9c2f00|0xffd166|nature|ocean"
    "ocean|Ocean Drift|30|0x005f73|0x94d2bd|nature|forest"
    "forest|Forest Walk|30|0x2d6a4f|0xd8f3dc|nature|"
)

# One title: video then thumbnail; each skipped when already there.
make_title() {
    local id=$1 name=$2 secs=$3 bg=$4 fg=$5
    local mp4=$out/$id.mp4 jpg=$out/$id.jpg
    if [[ ! -s $mp4 ]]; then
        # drawtext: the clock is the frame's pts as h:m:s.ms, so the picture shows exactly where
        # playback is — what a browser test or a person compares with the resumed position.
        local vf="drawtext=fontfile=$bold:text='%{pts\\:hms}':fontsize=72:fontcolor=$fg:x=(w-tw)/2:y=(h-th)/2"
        vf+=",drawtext=fontfile=$regular:text='$name':fontsize=30:fontcolor=$fg@0.85:x=(w-tw)/2:y=36"
        vf+=",drawtext=fontfile=$regular:text='playhead demo · ${secs} s':fontsize=18:fontcolor=$fg@0.7:x=(w-tw)/2:y=h-48"
        ffmpeg -nostdin -hide_banner -loglevel error -y \
            -f lavfi -i "color=c=$bg:s=640x360:r=24:d=$secs" -vf "$vf" \
            -c:v libx264 -preset veryfast -crf 30 -pix_fmt yuv420p -g 48 -movflags +faststart \
            -f mp4 "$mp4.tmp"
        mv -f "$mp4.tmp" "$mp4"
    fi
    if [[ ! -s $jpg ]]; then
        ffmpeg -nostdin -hide_banner -loglevel error -y -ss 1.5 -i "$mp4" -frames:v 1 \
            -vf scale=320:180 -q:v 5 -f image2 "$jpg.tmp"
        mv -f "$jpg.tmp" "$jpg"
    fi
}

pids=()
for row in "${titles[@]}"; do
    IFS='|' read -r id name secs bg fg _ _ <<<"$row"
    make_title "$id" "$name" "$secs" "$bg" "$fg" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
((rc == 0)) || die "ffmpeg failed (see above)"

# catalog.json: rewritten each run (cheap), so it always matches the table above.
{
    printf '{"titles":['
    sep=
    for row in "${titles[@]}"; do
        IFS='|' read -r id name secs _ _ series next <<<"$row"
        extra=
        [[ -n $series ]] && extra+=$(printf ',"series_id":"%s"' "$series")
        [[ -n $next ]] && extra+=$(printf ',"next_video_id":"%s"' "$next")
        printf '%s\n{"id":"%s","title":"%s","duration":%s,"src":"media/%s.mp4","thumbnail":"media/%s.jpg"%s}' \
            "$sep" "$id" "$name" "$secs" "$id" "$id" "$extra"
        sep=,
    done
    printf '\n]}\n'
} >"$out/catalog.json.tmp"
mv -f "$out/catalog.json.tmp" "$out/catalog.json"
echo "${0##*/}: ${#titles[@]} titles in $out" >&2
